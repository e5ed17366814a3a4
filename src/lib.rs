//! bulkget: move enormous numbers of files over HTTP as fast as the machine
//! allows, and never lose one.
//!
//! Data flows through stages named after these modules:
//! [`server`] (the seed's file API, for tests and benchmarks) and
//! [`synthetic`] (the public content rule of the synthetic dataset).

pub mod bench;
pub mod beneath;
pub mod cli;
pub mod cp;
pub mod ctx;
pub mod error;
pub mod fetch;
pub mod get;
pub mod job;
pub mod journal;
pub mod listing;
pub mod ls;
pub mod mirror;
pub mod names;
pub mod par;
pub mod pipeline;
pub mod probe;
pub mod progress;
pub mod queue;
pub mod server;
pub mod sink;
pub mod store;
pub mod synthetic;
pub mod units;
