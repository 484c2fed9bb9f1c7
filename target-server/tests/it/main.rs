//! The reference server's integration tests, one binary (it links once): each module drives
//! target-server in-process or over a socket against a real redis-server on a free loopback
//! port, through [`support`]. grab-bench's own tests (which also run the reference server as a
//! system under test) are in the workspace's `tests/it`.

mod support;

mod bad_requests;
mod front_door;
mod limits;
mod server;
