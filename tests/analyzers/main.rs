//! The analyzers on workloads made to trigger them, on the lab's real PoWA 4.1.4
//! repository (and 3.2.0 for reading quals), read as the SELECT-only role: a regression
//! and a call spike between two phases (`regression`), resource hogs and the health
//! score (`hogs`, and through `once`), advice that fits each class of query
//! (`advice_classes`), the missing-index advisor with hypopg (`missing_index`), and one
//! story per problem in what people receive (`story`).

#[path = "../support/robot.rs"]
mod robot;
#[path = "../support/mod.rs"]
mod support;

mod advice_classes;
mod changes;
mod charts;
mod hogs;
mod missing_index;
mod once;
mod regression;
mod story;
