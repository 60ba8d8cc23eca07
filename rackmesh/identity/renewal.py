"""Getting a certificate and keeping it renewed: a new key and CSR each time, signed by whoever ``sign`` asks
(the operator's signer for an agent, the CA in-process for the operator itself)."""

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable

from cryptography import x509

from rackmesh.identity.authority import csr_for, new_key
from rackmesh.identity.credentials import Credentials

logger = logging.getLogger(__name__)
Sign = Callable[[bytes], Awaitable[x509.Certificate]]  # a CSR (PEM) -> its certificate
# A failed renewal is tried again after this share of the time left (at least a second, at most a minute),
# so a signer that is down for a while is asked often enough before the certificate expires.
RETRY_SHARE = 0.1


async def obtain(credentials: Credentials, sign: Sign) -> None:
    key = new_key()
    credentials.install(key, await sign(csr_for(key, credentials.identity)))
    logger.info("certificate installed", extra={"identity": str(credentials.identity),
                                                "expires": credentials.expires_at.isoformat()
                                                if credentials.expires_at else None})


async def keep_renewed(credentials: Credentials, sign: Sign) -> None:
    """Renew at ``RENEW_AT`` of each certificate's lifetime, for ever; failures are retried until it expires
    (and after: a node that lost its identity must get a new one as soon as the signer answers)."""
    while True:
        await asyncio.sleep(max(0.0, _seconds_until(credentials.renew_at)))
        try:
            await obtain(credentials, sign)
        except Exception as exc:  # the signer is unreachable or refuses: keep the current one, ask again
            left = _seconds_until(credentials.expires_at) if credentials.expires_at else 0.0
            pause = min(60.0, max(1.0, left * RETRY_SHARE))
            logger.warning("certificate renewal failed; retrying", extra={
                "identity": str(credentials.identity), "error": repr(exc), "secondsLeft": round(left, 1),
                "pause": round(pause, 1)})
            await asyncio.sleep(pause)


def _seconds_until(moment: datetime.datetime) -> float:
    return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
