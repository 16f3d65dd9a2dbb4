"""Secrets never shown: every syntax an Azure connection string accepts, as a table.

Each row is (the connection string, the secret in it, what must still be shown)."""

import pytest

from transforms.io.eventhubs.rules import redact

pytestmark = pytest.mark.unit

AZURE = [
    ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=S3CRET;"
     "EntityPath=hub", "S3CRET",
     "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=***;"
     "EntityPath=hub"),
    ("Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey =S3CRET", "S3CRET",
     "Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey =***"),
    ("Endpoint=sb://ns/;SharedAccessKey= S3CRET ;EntityPath=h", "S3CRET",
     "Endpoint=sb://ns/;SharedAccessKey= ***;EntityPath=h"),
    ("endpoint=sb://ns/;sharedaccesskeyname=Root;sharedaccesskey=S3CRET", "S3CRET",
     "endpoint=sb://ns/;sharedaccesskeyname=Root;sharedaccesskey=***"),
    ("ENDPOINT=sb://ns/;SHAREDACCESSKEY=S3CRET", "S3CRET", "ENDPOINT=sb://ns/;SHAREDACCESSKEY=***"),
    ("Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=sb%3a%2f%2fns&sig=S3CRET%3d"
     "&se=1700000000&skn=Root", "S3CRET", "Endpoint=sb://ns/;SharedAccessSignature=***"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=S3C+RET==;"
     "EndpointSuffix=core.windows.net", "S3C+RET",
     "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;"
     "EndpointSuffix=core.windows.net"),
    ("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b"
     "&sig=S3CRET", "S3CRET",
     "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=***"),
    ("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAcessKey=S3CRET", "S3CRET",  # misspelt
     "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAcessKey=***"),
    ("failed: Endpoint=sb://x/;SharedAccessKey=S3CRET", "S3CRET",  # inside a message
     "failed: Endpoint=sb://x/;SharedAccessKey=***"),
]


@pytest.mark.parametrize("text, secret, shown", AZURE)
def test_azure_connection_strings(text, secret, shown):
    assert redact(text) == shown
    assert secret not in shown
