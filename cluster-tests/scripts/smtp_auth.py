"""An SMTP server for the alerting tests that requires STARTTLS, then AUTH (PLAIN or LOGIN) as one user, and
delivers what it accepts into a maildir: Debian's aiosmtpd, whose command line has no option for AUTH.

usage: smtp_auth.py HOST PORT CERT KEY USER PASSWORD MAILDIR
"""
import asyncio
import ssl
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult

host, port, cert, key, user, password, maildir = sys.argv[1:8]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = getattr(auth_data, "login", None) == user.encode() and auth_data.password == password.encode()
    return AuthResult(success=ok)


async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    handler = Mailbox(maildir)

    def factory():
        return SMTP(handler, tls_context=ctx, require_starttls=True, authenticator=authenticator,
                    auth_required=True, auth_require_tls=True)

    server = await asyncio.get_running_loop().create_server(factory, host, int(port))
    await server.serve_forever()


asyncio.run(main())
