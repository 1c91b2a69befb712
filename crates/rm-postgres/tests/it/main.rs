//! The PostgreSQL ledger against a real server: the conformance suite every ledger runs, the
//! model-based test, and tests of what only a shared database has (many connections with an
//! independent auditor, the server's clock, NOTIFY, migrations, retention, lost connections).

mod conformance;
mod faults;
mod model;
mod processes;
mod sessions;
mod shared;
mod stress;
mod support;
mod waiting;
