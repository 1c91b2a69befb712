//! [`Listener`]: the events of every process that uses one schema, received with `LISTEN`.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use rm_model::Event;

use crate::Error;

/// Receives the events every process publishes on one schema (`NOTIFY`, sent when their
/// transactions commit), on a connection of its own.
///
/// Events are published only while some listener is registered (this one registers itself
/// when opened and unregisters when dropped; one whose process died is removed by the next
/// sweep), so that a pool nobody watches pays nothing for them: every operation that starts
/// after [`PgLedger::listen`](crate::PgLedger::listen) returns is published.
///
/// Events arrive in commit order. Their `sequence` numbers come from one database sequence,
/// so they are unique and grow across processes, but a transaction that committed later may
/// carry a smaller number. An event too large for a notification (over about 8 kB, a
/// reservation with very many items) arrives with its `items` empty: read the reservation
/// with `get` when they matter. Notifications sent while no listener was connected are not
/// kept: a monitor that reconnects reads a snapshot first.
pub struct Listener {
    client: Client,
    schema: String,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Best effort: a listener whose connection is gone is removed by the next sweep.
        let _ = self.client.execute(
            &format!(
                "DELETE FROM \"{}\".listener WHERE pid = pg_backend_pid()",
                self.schema
            ),
            &[],
        );
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    pub(crate) fn open(
        config: &postgres::Config,
        schema: &str,
        channel: &str,
    ) -> Result<Listener, Error> {
        let mut client = config
            .connect(NoTls)
            .map_err(|source| Error::Connect { source })?;
        // Listening first, then registered: every operation that starts once this returns
        // sees the registration and publishes.
        client
            .batch_execute(&format!(
                "LISTEN \"{channel}\";
                 INSERT INTO \"{schema}\".listener (pid) VALUES (pg_backend_pid())
                 ON CONFLICT (pid) DO NOTHING"
            ))
            .map_err(|source| Error::Listen { source })?;
        Ok(Listener {
            client,
            schema: schema.to_owned(),
        })
    }

    /// The next event, waiting at most `timeout`; `None` when none came. Payloads that are
    /// not events (sent by hand on the channel) are skipped.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>, Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut notifications = self.client.notifications();
            let mut waiting = notifications.timeout_iter(left);
            let Some(notification) = waiting.next().map_err(|source| Error::Listen { source })?
            else {
                return Ok(None);
            };
            if let Some(event) = parse(notification.payload()) {
                return Ok(Some(event));
            }
        }
    }
}

/// An event from a notification's payload (dropping the `truncated` mark).
fn parse(payload: &str) -> Option<Event> {
    let mut value: serde_json::Value = serde_json::from_str(payload).ok()?;
    if let Some(object) = value.as_object_mut() {
        object.remove("truncated");
    }
    serde_json::from_value(value).ok()
}
