"""The Compute API clients of one run, and which endpoint may receive credentials.

:class:`Compute` holds the clients of one run (instances, images, firewalls, zones, and
the operations clients that poll them). Its ``endpoint`` (the gcp backend passes
``settings.gcp_api_endpoint``) points them at another Compute endpoint; a
plain-``http://`` one must be on loopback (an emulator or the tests' stub) and gets
anonymous credentials, so no token is ever sent in clear text (:func:`check_endpoint`).
The calls themselves are :mod:`labkit.backends.gcp.compute`'s.
"""

from __future__ import annotations

import ipaddress
import urllib.parse

from labkit.errors import CloudError, ConfigError, MissingToolError

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def compute_api():
    try:
        from google.cloud import compute_v1
    except ImportError:
        raise MissingToolError("google-cloud-compute is missing: pip install 'labkit[gcp]'") from None
    return compute_v1


def _endpoint_of(client_options) -> str | None:
    if client_options is None:
        return None
    if isinstance(client_options, dict):
        return client_options.get("api_endpoint")
    return getattr(client_options, "api_endpoint", None)


def check_endpoint(endpoint: str, credentials=None):
    """The credentials allowed for ``endpoint`` (design §10, issue 15 item 10).

    Real credentials go only to ``https://*.googleapis.com``; a loopback endpoint (an
    emulator or the tests' stub, http or https) gets anonymous credentials and
    nothing else; any other endpoint is refused, so no token is ever sent elsewhere.
    """
    from google.auth.credentials import AnonymousCredentials

    parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host = (parts.hostname or "").lower()
    if _is_loopback(host):
        if credentials is not None and not isinstance(credentials, AnonymousCredentials):
            raise ConfigError(f"Compute endpoint {endpoint} is on loopback: it gets anonymous credentials only")
        return AnonymousCredentials()
    if parts.scheme == "https" and (host == "googleapis.com" or host.endswith(".googleapis.com")):
        return credentials
    raise ConfigError(f"Compute endpoint {endpoint}: credentials are only sent to https://*.googleapis.com; "
                      "an emulator must listen on loopback (e.g. http://127.0.0.1:PORT)")


class Compute:
    """The Compute API clients one run uses, built from Application Default Credentials
    unless ``credentials`` (and, for tests, ``client_options``) are given; ``endpoint``
    (``settings.gcp_api_endpoint``) replaces the API's address (see :func:`check_endpoint`)."""

    def __init__(self, credentials=None, client_options=None, transport: str = "rest", endpoint: str | None = None):
        compute_v1 = compute_api()
        if client_options is None and endpoint:
            client_options = {"api_endpoint": endpoint}
        target = _endpoint_of(client_options)
        if target:
            credentials = check_endpoint(target, credentials)
        if credentials is None:
            import google.auth

            try:
                credentials, _ = google.auth.default(scopes=SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as e:
                raise CloudError(f"no Google Cloud credentials: run `gcloud auth application-default login` ({e})") from None
        kw = {"credentials": credentials, "transport": transport}
        if client_options is not None:
            kw["client_options"] = client_options
        self.instances = compute_v1.InstancesClient(**kw)
        self.images = compute_v1.ImagesClient(**kw)
        self.firewalls = compute_v1.FirewallsClient(**kw)
        self.zones = compute_v1.ZonesClient(**kw)
        # The clients poll their operations through operations clients they build themselves,
        # without our client_options (so a stub endpoint would be bypassed). Hand them ones
        # built like the others; with default options this changes nothing.
        ops = {"zone_operations": compute_v1.ZoneOperationsClient(**kw),
               "global_operations": compute_v1.GlobalOperationsClient(**kw)}
        for client in (self.instances, self.images, self.firewalls):
            services = getattr(client._transport, "_extended_operations_services", None)
            if isinstance(services, dict):
                services.update(ops)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
