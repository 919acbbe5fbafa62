//! Reading PoWA, against the lab's real repositories (PoWA 3.2.0, 4.1.4 with remote
//! servers, 5 on PostgreSQL 17) as the SELECT-only role: discovery and window deltas
//! (`read`), the fast and the live reads against the naive reference (`fast_read`,
//! `live`), what is particular to PoWA 5 (`powa5`), names of remote servers without
//! configuration (`names_reach`) and TLS (`tls`).

#[path = "../support/mod.rs"]
mod support;

/// The tests `$on4`, `$on5` and `$on3` of a check that every PoWA version of the lab must
/// pass: `$check(cluster, dsn)` on PoWA 4.1.4 (`repo`), 5 (`repo5`) and 3.2.0 (`repo3`).
/// Each takes its module's turn (`support::turn`), as every test of this crate does.
macro_rules! on_every_powa {
    ($check:ident: $on4:ident, $on5:ident $(ignored $why5:literal)?, $on3:ident) => {
        #[actix_rt::test]
        async fn $on4() {
            let _turn = crate::support::turn(module_path!());
            $check("repo", &crate::support::lab().repo_dsn()).await;
        }

        #[actix_rt::test]
        $(#[ignore = $why5])?
        async fn $on5() {
            let _turn = crate::support::turn(module_path!());
            $check("repo5", &crate::support::lab().repo5_dsn()).await;
        }

        #[actix_rt::test]
        async fn $on3() {
            let _turn = crate::support::turn(module_path!());
            $check("repo3", &crate::support::lab().repo3_dsn()).await;
        }
    };
}

mod fast_read;
mod live;
mod names_reach;
mod once;
mod powa5;
mod read;
mod tls;
