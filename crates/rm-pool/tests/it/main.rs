//! Object pools (static, dynamic, selected by labels, resized live, under many threads) and
//! elastic groups (lending, borrowing, reclaim, conservation under many threads).

mod elastic;
mod model;
mod pool;
