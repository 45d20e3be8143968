"""CurveZMQ: key pairs, and the socket options that turn on authentication and encryption.

The service holds a secret key and allows the clients whose public keys lie in
one directory (checked by a ZAP authenticator). A client holds its own secret
key and the service's public key. Key files are the ZeroMQ certificate files
that ``zmq.auth.create_certificates`` writes: ``NAME.key`` (public) and
``NAME.key_secret`` (public and secret).
"""

from __future__ import annotations

import os

import zmq
import zmq.auth

LOOPBACK_PREFIXES = ("tcp://127.", "tcp://localhost:", "tcp://[::1]:", "ipc://", "inproc://")


def keygen(directory: str | os.PathLike, names: list[str]) -> list[str]:
    """Write a key pair per name into ``directory``; the files written.

    Secret key files are readable by their owner only (0600), from before a
    secret is written into them.
    """
    os.makedirs(directory, exist_ok=True)
    written = []
    for name in names:
        secret = os.path.join(os.fspath(directory), f"{name}.key_secret")
        # pyzmq writes into the file as it is (open "w" keeps an existing file's mode).
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        finally:
            os.close(fd)
        written.extend(zmq.auth.create_certificates(os.fspath(directory), name))
    return written


def load_keys(path: str | os.PathLike, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) keys from a certificate file, with a clear error for a wrong file."""
    try:
        public, secret_key = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a ZeroMQ key file ({e}); make keys with streammlp keygen") from None
    if secret and secret_key is None:
        raise ValueError(f"{path} holds only a public key; pass the .key_secret file")
    return public, secret_key


def secure_server(sock: zmq.Socket, secret_file: str) -> None:
    """Make ``sock`` a CURVE server with the key pair in ``secret_file`` (before it binds)."""
    public, secret = load_keys(secret_file, secret=True)
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def secure_client(sock: zmq.Socket, secret_file: str, server_key_file: str) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is in ``server_key_file``."""
    public, secret = load_keys(secret_file, secret=True)
    sock.curve_secretkey, sock.curve_publickey = secret, public
    sock.curve_serverkey = load_keys(server_key_file, secret=False)[0]


def authenticator(context: zmq.Context, allow_keys: str):
    """A running ZAP authenticator allowing the public keys in the directory ``allow_keys``."""
    from zmq.auth.thread import ThreadAuthenticator

    if not os.path.isdir(allow_keys) or not any(f.endswith(".key") for f in os.listdir(allow_keys)):
        raise ValueError(f"--allow-keys {allow_keys}: expected a directory of clients' .key files")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=allow_keys)
    return auth


def is_loopback(endpoint: str) -> bool:
    return endpoint.startswith(LOOPBACK_PREFIXES)
