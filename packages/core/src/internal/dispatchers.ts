/**
 * Scheduler dispatchers shared per scheduler: `dispatchersBy()` returns a lookup that makes one
 * dispatcher for each Effect `Scheduler` it is asked about and keeps it (weakly) for the next
 * caller. The writer and the reader each keep their own lookup, so each has its own dispatcher.
 *
 * @internal
 */
import type { Scheduler } from "effect"

/** A per-scheduler dispatcher lookup (one dispatcher per scheduler, created on first use). */
export const dispatchersBy = (): (scheduler: Scheduler.Scheduler) => Scheduler.SchedulerDispatcher => {
  const dispatchers = new WeakMap<Scheduler.Scheduler, Scheduler.SchedulerDispatcher>()
  return (scheduler) => {
    let dispatcher = dispatchers.get(scheduler)
    if (dispatcher === undefined) {
      dispatcher = scheduler.makeDispatcher()
      dispatchers.set(scheduler, dispatcher)
    }
    return dispatcher
  }
}
