//! The concurrent reservation ledger: registered resources, all-or-nothing holds placed by a
//! strategy, leases with TTL and fencing tokens, and events for observers.
//!
//! # Where it sits
//! A middle crate: it implements `rm-model`'s [`ReservationLedger`], places requests with
//! `rm-plan` (the planner every ledger shares, so that each chooses the same resources on the
//! same state) and depends on no other middle crate. It takes a validator and an event sink through `rm-model`'s traits, so it
//! knows nothing of `rm-validate` or `rm-monitor`.
//!
//! # Main types
//! - [`ReservationManager`]: the ledger, with the seed's `create_reservation`,
//!   `confirm_reservation` and `release_reservation` beside the trait's operations.
//! - [`ReservationManagerBuilder`]: clock, default TTL, retention, validator, event sink.
//! - [`PermitPool`] and [`Permit`]: lightweight leases on one capacity (a lock-free
//!   compare-and-swap, released on drop) for semaphore-like uses, visible in snapshots as
//!   `leased`.
//! - The items that go with them: [`PermitError`].
//!
//! # Design
//! - **Per-resource locks, one global order.** Each resource's accounting sits behind its own
//!   mutex; a multi-resource hold locks its resources in registration order, so holds are
//!   atomic and deadlock-free, and operations on different resources run in parallel.
//! - **Plan without locks, commit under them.** What is free per capacity is an atomic
//!   counter. Placement reads the counters without locks, chooses with the strategy, then
//!   locks the chosen resources and takes from the counters, all or nothing; if another thread
//!   took the capacity meanwhile it gives back what it took and plans again. Every check
//!   happens before the first change, so an error leaves nothing half-applied.
//! - **Permits without locks.** A permit takes from the same counter with one
//!   compare-and-swap and gives back on drop, so semaphore-like uses cost about what a
//!   semaphore costs.
//! - **An index instead of a scan of descriptions.** The resources that pass a requirement's
//!   type, unit and hard constraints are computed once per requirement shape and cached until
//!   the catalog changes (`rm-plan`'s catalog); placement then reads only each candidate's
//!   free counters.
//! - **An index of holders for affinity.** Once a request with affinity terms arrives, active
//!   holds are also kept by requester and by label with the resources they hold, so the
//!   holds a term selects (one requester, or one label) are found without a pass over every
//!   hold, and each candidate is judged by one lookup among the domains they occupy. Until
//!   then the index costs one atomic load per grant.
//! - **Timers, not threads.** TTL expiry and the forgetting of ended reservations run on the
//!   callers' threads (and on [`ReservationLedger::expire_due`]) from a timer heap with one
//!   entry per pending hold (confirm, release and renew remove or move it at once) and a
//!   retention queue; an expired hold is also expired lazily when touched, so it never
//!   confirms and never blocks a grant. One thread at a time runs due timers; another that
//!   finds a timer due meanwhile waits for it rather than planning around a hold that is
//!   about to end, so a hold whose deadline has passed when a call begins never refuses
//!   that call's grant and never shows as pending in its snapshot.
//! - **Ids that say where their record is.** A generated id keeps 96 random bits (unique
//!   across processes and hosts) and names its record's place in an append-only table in the
//!   other 32, so confirm, release and forgetting find the record with an index and one
//!   small lock, without hashing; a place is reused once its reservation is forgotten, and a
//!   lookup compares the whole id, so an old id never reaches the place's next reservation.
//!   Ids the caller chooses are kept in a concurrent hash map.
//! - **No allocation in steady state.** A reserve → confirm → release cycle allocates nothing
//!   once warm: a forgotten record nobody holds is refilled by a later grant (its items too,
//!   unless a caller still keeps a reservation of its last life), and a request's few
//!   placements are planned in inline storage.
//! - **Consistent snapshots.** A snapshot holds every resource lock at once; since every change
//!   holds the locks of the resources it touches, the snapshot is one moment.
//!
//! # Concurrency
//! `ReservationManager` is `Send + Sync`; every operation takes `&self`. Lock order: the
//! catalog (read for grants, write for registration and capacity changes), then the sweep
//! (held by the thread running due expiry timers), then resource locks
//! by registration order, then the shard of the map of chosen ids (a grant under a chosen id
//! holds its entry until it inserts the record), then a reservation's state lock, then the
//! timer heap, the retention queue, the record table's places and free list, and the holder
//! index's shards, which are leaves. Event sinks are
//! called with resource locks held and must not call back.
//!
//! # Errors and panics
//! Operations return [`LedgerError`]: definite errors (insufficient capacity with a shortfall
//! per requirement, invalid input naming the field, unknown ids, expired, stale fencing token,
//! id conflict) and nothing applied. [`ReservationManagerBuilder::build`] returns [`Error`].
//! Nothing panics on input.
//!
//! # Events
//! Observers subscribe to events ([`ReservationManager::subscribe`], or an
//! [`EventSink`](rm_model::EventSink)). Sequence numbers are unique and without gaps. A
//! [`Subscription`] receives every event published after it subscribed in sequence
//! order, consecutively numbered, whatever the number of threads; a sink is called on the
//! publishing thread, so events of different threads may reach it out of sequence order
//! (those about one reservation or resource always arrive in the order they happened).
//!
//! # Retention
//! An ended reservation is remembered for the builder's
//! [`retention`](ReservationManagerBuilder::retention) (5 minutes by default; zero is refused):
//! within it, `get` and a retry by id (the same request) return the reservation as it
//! ended, and a release or confirm of it fails clearly without crediting capacity twice.
//! After it, the id is forgotten: `get` answers an unknown id, and a request under it is new.
//! The memory is swept in batches, up to an eighth of the retention (at most a second) after
//! it runs out, so that steady traffic does not pay a sweep per reservation; no answer shows
//! the lag, because a lookup that finds a reservation past its retention forgets it first.
//!
//! # Metrics
//! None directly: observers read events, so the hot path never calls into monitoring.
//!
//! # Example
//! The seed's "Resource Reservation":
//!
//! ```
//! use rm_model::{RequesterId, Resource, ResourceCapacity, ResourceRequirement, ResourceType,
//!     ReservationStrategy, Unit};
//! use rm_reserve::{ReservationLedger, ReservationManager};
//!
//! let compute_resource = Resource::new("compute-node-1", ResourceType::Compute, ResourceCapacity::new(0, 100, Unit::CORES)?)?;
//!
//! // Create a reservation manager
//! let manager = ReservationManager::new();
//! manager.register_resource(compute_resource)?;
//!
//! // Define resource requirements
//! let compute_requirement = ResourceRequirement::new(ResourceType::Compute, 50, Unit::CORES);
//!
//! // Create a reservation
//! let reservation = manager.create_reservation(
//!     RequesterId::new("task-1")?,
//!     vec![compute_requirement],
//!     ReservationStrategy::Balanced,
//! )?;
//!
//! // Confirm the reservation
//! manager.confirm_reservation(&reservation.id)?;
//!
//! // Use the resources...
//!
//! // Release the reservation when done
//! manager.release_reservation(&reservation.id)?;
//! assert!(manager.audit()?.is_clean());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod catalog;
mod error;
mod events;
mod holders;
mod manager;
mod permit;
mod record;
mod table;
mod timers;

pub use error::Error;
pub use events::Subscription;
pub use manager::{ReservationManager, ReservationManagerBuilder};
pub use permit::{Permit, PermitError, PermitPool};
pub use rm_model::{LedgerError, ReservationLedger};
