#!/usr/bin/env python3
"""A real SMTP server on loopback for the email channel's tests (aiosmtpd, Debian's
python3-aiosmtpd).

    smtp_server.py --dir DIR [--starttls CERT KEY | --tls CERT KEY]
                   [--auth USER:PASSWORD] [--refuse-rcpt ADDRESS]
                   [--tempfail N]

Prints "PORT <n>" on stdout once it accepts connections, then serves until killed or
until its standard input closes. Each accepted message is written to DIR as <k>.eml (the
data as received) and <k>.json (the envelope: mail_from, rcpt_tos, whether the session
was on TLS and authenticated).

- --starttls: STARTTLS offered and required before MAIL (and AUTH);
  --tls: TLS from the first byte (implicit TLS, as on port 465).
- --auth: AUTH PLAIN/LOGIN required, only this login accepted (535 otherwise).
- --refuse-rcpt: RCPT TO that address gets "550 5.1.1 no such user".
- --tempfail N: the first N messages get "451 4.3.0 try again later" at DATA.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.args = args
        self.count = 0
        self.tempfails = args.tempfail

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.refuse_rcpt and address.lower() == self.args.refuse_rcpt.lower():
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfails > 0:
            self.tempfails -= 1
            return "451 4.3.0 try again later"
        self.count += 1
        base = os.path.join(self.args.dir, str(self.count))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        # The .eml appears last and whole: a reader that sees it sees everything.
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 queued"


def authenticator(login, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == login.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth")
    p.add_argument("--refuse-rcpt")
    p.add_argument("--tempfail", type=int, default=0)
    args = p.parse_args()

    kwargs = {}
    ssl_context = None
    if args.starttls or args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*(args.starttls or args.tls))
        if args.starttls:
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            ssl_context = ctx
    if args.auth:
        login, password = args.auth.split(":", 1)
        kwargs.update(
            authenticator=authenticator(login, password),
            auth_required=True,
            auth_require_tls=bool(args.starttls or args.tls),
        )

    port = free_port()
    controller = Controller(
        Handler(args),
        hostname="127.0.0.1",
        port=port,
        ssl_context=ssl_context,
        **kwargs,
    )
    controller.start()
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
