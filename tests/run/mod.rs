//! `safe-exec run` against the real engine: the exit-code table, the JSON schema, program I/O, and
//! every row of docs/threats.md that applies to `run`. Each test checks the report and that
//! its own containers are gone afterwards.

mod basics;
mod files;
mod hostile;
mod input;
mod isolation;
mod limits;
mod supervision;
