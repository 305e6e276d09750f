//! The console's pages, one file each.

pub mod conversations;
pub mod followers;
pub mod keys;
pub mod menu;
pub mod overview;
pub mod phone;
pub mod pushes;
pub mod rules;

/// Rows per page of a listing.
pub const PAGE_ROWS: u32 = 50;
