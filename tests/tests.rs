//! Integration tests: the real binary against the real Docker engine. One target with modules so
//! the binary is built once. Tests that need the engine fail (never skip) when it is missing, with
//! a message saying how to start it.

mod client;
mod common;
mod doctor;
mod engines;
mod grade;
mod image;
mod mcp;
mod offline;
mod run;
mod serve;
