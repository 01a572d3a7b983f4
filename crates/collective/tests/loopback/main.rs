//! Multi-rank tests over real tonic servers on 127.0.0.1:0, in one process.

mod exact;
mod faults;
mod ring;
mod support;
