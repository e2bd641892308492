//! `bon::run` against a fake upstream and a fake scorer (no I/O, paused time).
