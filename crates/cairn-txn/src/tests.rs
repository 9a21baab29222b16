//! Unit tests of the coordinator rules.
