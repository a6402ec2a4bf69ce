//! `safe-exec run` against the real engine.
