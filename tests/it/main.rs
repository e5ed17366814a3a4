//! Integration tests: one binary, real sockets on 127.0.0.1, fixture trees
//! built on the fly. Servers bind port 0 and hand their address on.

mod azure;
mod common;
mod cp;
mod durable;
mod gcs;
mod get;
mod ls;
mod mirror;
mod net;
mod peers;
mod probe;
mod pushback;
mod queue;
mod resume;
mod roles;
mod s3rver;
mod sched;
mod serve;
mod shared_job;
mod store;
mod tar;
mod tls;
mod upload;
