//! Small pieces every layer may use, and which use nothing of huixin's: the clock and time
//! zones, token buckets, group commit, the path segments huixin keeps for itself. They live here, below
//! everything, so that no layer has to reach up or sideways for them.

pub mod buckets;
pub mod clock;
pub mod group;
pub mod routes;
