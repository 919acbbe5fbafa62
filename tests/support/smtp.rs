//! A real SMTP server on loopback for the email channel's tests: `smtp_server.py` beside
//! this file (aiosmtpd), and a throwaway CA with a certificate for `localhost` (openssl).
//! Included with `#[path = "../support/smtp.rs"] mod smtp;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// What the server is asked to do.
#[derive(Default)]
pub struct Options {
    /// STARTTLS (required) or TLS from the first byte, with this certificate.
    pub starttls: Option<Certs>,
    pub tls: Option<Certs>,
    /// The only login accepted (AUTH required).
    pub auth: Option<(String, String)>,
    /// RCPT TO this address is refused with 550.
    pub refuse_rcpt: Option<String>,
    /// The first N messages are refused with 451 at DATA.
    pub tempfail: usize,
}

/// A CA and a server certificate for `localhost` it signed, plus an unrelated CA.
#[derive(Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let quiet = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(quiet.is_ok_and(|s| s.success()), "openssl {args:?} failed");
}

impl Certs {
    /// Makes them in `dir`.
    pub fn make(dir: &Path) -> Certs {
        let subj = |cn: &str| format!("/CN={cn}");
        for (name, cn) in [("ca", "powa-sentinel test CA"), ("other", "another CA")] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-subj",
                    &subj(cn),
                ],
            );
        }
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
        );
        Certs {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// A running server; stopped when dropped.
pub struct Smtp {
    pub port: u16,
    dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// One message as received.
pub struct Received {
    pub raw: Vec<u8>,
    /// The envelope: `mail_from`, `rcpt_tos`, `tls`, `authenticated`.
    pub envelope: serde_json::Value,
}

impl Smtp {
    /// Starts it, keeping what it receives in `dir`.
    pub fn start(dir: &Path, o: &Options) -> Smtp {
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        // Debian's python, which python3-aiosmtpd installs into (a python3 earlier on
        // PATH may be another).
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg("--dir").arg(dir);
        if let Some(c) = &o.starttls {
            cmd.arg("--starttls").arg(&c.cert).arg(&c.key);
        }
        if let Some(c) = &o.tls {
            cmd.arg("--tls").arg(&c.cert).arg(&c.key);
        }
        if let Some((u, p)) = &o.auth {
            cmd.arg("--auth").arg(format!("{u}:{p}"));
        }
        if let Some(a) = &o.refuse_rcpt {
            cmd.arg("--refuse-rcpt").arg(a);
        }
        cmd.arg("--tempfail").arg(o.tempfail.to_string());
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "python3 starts (is python3-aiosmtpd installed? tests/support/powa-lab install)",
            );
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: {line:?}"));
        Smtp {
            port,
            dir: dir.to_path_buf(),
            child,
            stdin,
        }
    }

    /// The messages received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for k in 1.. {
            let eml = self.dir.join(format!("{k}.eml"));
            let Ok(raw) = std::fs::read(&eml) else { break };
            let meta = std::fs::read_to_string(self.dir.join(format!("{k}.json"))).unwrap();
            out.push(Received {
                raw,
                envelope: serde_json::from_str(&meta).unwrap(),
            });
        }
        out
    }

    /// Waits until `n` messages were received (at most `limit`), and returns them.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let t0 = Instant::now();
        loop {
            let r = self.received();
            if r.len() >= n || t0.elapsed() > limit {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
