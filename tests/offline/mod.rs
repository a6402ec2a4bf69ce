//! Tests that need no engine, no image and no root: everything refused before a container could
//! exist, checked against a recording stand-in for `docker` that proves it was never called (not
//! merely that nothing is left). `cargo nextest run --profile offline` runs these and the unit
//! tests in seconds; CI runs them with everything else.

mod doctor;
mod grade;
mod run;
mod serve;
