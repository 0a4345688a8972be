"""A local Amazon Connect stand-in: the five operations the bridge calls, in Connect's own REST-JSON protocol, so the
real boto3 ``connect`` and ``connect-contact-lens`` clients talk to it through ``endpoint_url``.

Embedding API (replay, the demo and the tests use these names)::

    from voicebridge.connect import DeliveredSegments, load_connect_data, start_connect

    with start_connect(load_connect_data("events/connect/full-call.json")) as connect:
        client = boto3.client("connect", endpoint_url=connect.url)
        client.describe_contact(InstanceId=..., ContactId=...)["Contact"]
        connect.throttle(2, "DescribeContact")          # the next two get ThrottlingException 429
        os.environ.update(connect.client_environment())  # AWS_ENDPOINT_URL_CONNECT[_CONTACT_LENS]
"""

from voicebridge.connect.data import (
    ConnectData,
    ConnectDataError,
    ContactSegments,
    DeliveredSegments,
    SegmentSource,
    combined,
    load_connect_data,
)
from voicebridge.connect.server import ConnectOptions, RunningConnect, start_connect

__all__ = [
    "ConnectData",
    "ConnectDataError",
    "ConnectOptions",
    "ContactSegments",
    "DeliveredSegments",
    "RunningConnect",
    "SegmentSource",
    "combined",
    "load_connect_data",
    "start_connect",
]
