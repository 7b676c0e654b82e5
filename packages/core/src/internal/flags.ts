/**
 * Boolean properties stored as bits of one `flags` number (one small integer per object instead
 * of a field each). Declare each property on the class (`private declare name: boolean`) and
 * define its accessor once with `defineFlags`.
 *
 * @internal
 */

/** Defines, on `prototype`, a boolean accessor per entry that reads and writes `bit` of `this.flags`. Never throws. */
export const defineFlags = (prototype: object, bits: Readonly<Record<string, number>>): void => {
  for (const [name, bit] of Object.entries(bits)) {
    Object.defineProperty(prototype, name, {
      get(this: { flags: number }): boolean {
        return (this.flags & bit) !== 0
      },
      set(this: { flags: number }, on: boolean): void {
        this.flags = on ? this.flags | bit : this.flags & ~bit
      },
      configurable: true
    })
  }
}
