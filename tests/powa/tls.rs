//! TLS to a real repository: the lab's `repo` cluster with a throwaway CA and a server
//! certificate that names `localhost` only (`powa-lab tls`).

use std::path::PathBuf;
use std::sync::OnceLock;

use powa_sentinel::powa::monitored::MonitoredSettings;
use powa_sentinel::powa::{connect, RepositorySettings, SslMode};

use crate::support::lab;

struct Tls {
    ca: PathBuf,
    other_ca: PathBuf,
    port: String,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let vars = lab().tls();
        Tls {
            ca: vars["POWA_LAB_TLS_CA"].clone().into(),
            other_ca: vars["POWA_LAB_TLS_OTHER_CA"].clone().into(),
            port: vars["POWA_LAB_TLS_PORT"].clone(),
        }
    })
}

fn settings(host: &str, mode: SslMode, ca: Option<&PathBuf>) -> RepositorySettings {
    let lab = lab();
    let mut s = RepositorySettings::from_dsn(&format!(
        "host={host} port={} dbname=powa user={} password={}",
        tls().port,
        lab.var("POWA_LAB_RO_USER"),
        lab.var("POWA_LAB_RO_PASSWORD")
    ));
    s.sslmode = Some(mode);
    s.sslrootcert = ca.cloned();
    s
}

/// Whether the session is encrypted, as the server sees it.
async fn encrypted(s: &RepositorySettings) -> Result<bool, String> {
    let repo = connect("tls", s).await.map_err(|e| e.to_string())?;
    Ok(repo
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0))
}

#[actix_rt::test]
async fn each_sslmode_does_what_libpq_does() {
    let _turn = crate::support::turn(module_path!());
    let t = tls();
    assert!(!encrypted(&settings("127.0.0.1", SslMode::Disable, None))
        .await
        .unwrap());
    assert!(encrypted(&settings("127.0.0.1", SslMode::Prefer, None))
        .await
        .unwrap());
    // require encrypts without checking the certificate, even from an unknown CA.
    assert!(encrypted(&settings("127.0.0.1", SslMode::Require, None))
        .await
        .unwrap());
    // verify-full: chain and name.
    assert!(
        encrypted(&settings("localhost", SslMode::VerifyFull, Some(&t.ca)))
            .await
            .unwrap()
    );
    // verify-ca: chain only, so an address the certificate does not name is fine…
    assert!(
        encrypted(&settings("127.0.0.1", SslMode::VerifyCa, Some(&t.ca)))
            .await
            .unwrap()
    );
    // …while verify-full refuses it.
    let e = encrypted(&settings("127.0.0.1", SslMode::VerifyFull, Some(&t.ca)))
        .await
        .unwrap_err();
    assert!(
        e.contains("certificate was refused") && e.contains("not valid for name"),
        "{e}"
    );
}

#[actix_rt::test]
async fn prefer_falls_back_to_plain_where_the_server_has_no_tls() {
    let _turn = crate::support::turn(module_path!());
    let lab = lab();
    let mut s = RepositorySettings::from_dsn(&lab.repo3_dsn());
    s.sslmode = Some(SslMode::Prefer);
    assert!(!encrypted(&s).await.unwrap());
    s.sslmode = Some(SslMode::Require);
    let e = encrypted(&s).await.unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
}

#[actix_rt::test]
async fn a_wrong_ca_fails_with_a_clear_error() {
    let _turn = crate::support::turn(module_path!());
    let t = tls();
    for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
        let e = encrypted(&settings("localhost", mode, Some(&t.other_ca)))
            .await
            .unwrap_err();
        assert!(
            e.starts_with(
                "repository `tls`: cannot connect (TLS: the server's certificate was refused"
            ) && e.contains("UnknownIssuer")
                && e.contains("check sslrootcert and sslmode"),
            "{e}"
        );
    }
}

#[actix_rt::test]
async fn monitored_server_sessions_use_the_same_tls() {
    let _turn = crate::support::turn(module_path!());
    let t = tls();
    let lab = lab();
    let mut m = MonitoredSettings::from_dsn(&format!(
        "host=localhost port={} user={} password={}",
        t.port,
        lab.var("POWA_LAB_RO_USER"),
        lab.var("POWA_LAB_RO_PASSWORD")
    ));
    m.sslmode = Some(SslMode::VerifyFull);
    m.sslrootcert = Some(t.ca.clone());
    let client = m.connect("tls/local", "powa").await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    m.sslrootcert = Some(t.other_ca.clone());
    let e = m
        .connect("tls/local", "powa")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("certificate was refused"), "{e}");
}

#[test]
fn verification_without_a_ca_file_is_a_config_error() {
    let _turn = crate::support::turn(module_path!());
    let mut problems = Vec::new();
    let mut s = RepositorySettings::from_dsn("host=db1 user=x dbname=powa");
    s.sslmode = Some(SslMode::VerifyFull);
    s.validate("repositories.main", &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = format!("{problems:?}");
    assert!(
        text.contains("repositories.main.sslmode") && text.contains("sslrootcert"),
        "{text}"
    );
    // The dsn's own sslmode is honoured when the key is unset.
    let s = RepositorySettings::from_dsn("host=db1 sslmode=require");
    assert_eq!(s.effective_sslmode(), SslMode::Require);
}
