//! Seeded fault-schedule simulation.
