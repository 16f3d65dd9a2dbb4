"""Secrets never shown: every syntax libpq accepts (key/value and URI), as a table.

Each row is (the connection string, the secret in it, what must still be shown)."""

import pytest

from transforms.sinks.postgres import redact_dsn, redact_keyword_value, redact_uri

pytestmark = pytest.mark.unit

LIBPQ_KEYWORD_VALUE = [
    ("host=db password=s3cret dbname=x", "s3cret", "host=db password=*** dbname=x"),
    ("host=db password = s3cret dbname=x", "s3cret", "host=db password = *** dbname=x"),
    ("host=db password='a s3cret' dbname=x", "s3cret", "host=db password=*** dbname=x"),
    ("host=db password = 'a b s3cret' dbname=x", "s3cret", "host=db password = *** dbname=x"),
    ("password='it\\'s s3cret' host=h", "s3cret", "password=*** host=h"),
    ("password=a\\ s3cret host=h", "s3cret", "password=*** host=h"),
    ("host=h\tpassword=s3cret\tport=5432", "s3cret", "host=h\tpassword=***\tport=5432"),
    ("PASSWORD=s3cret host=h", "s3cret", "PASSWORD=*** host=h"),
    ("sslpassword=s3cret sslkey=/k.pem", "s3cret", "sslpassword=*** sslkey=/k.pem"),
    ("host=h password='unterminated s3cret", "s3cret", "host=h password=***"),
    ("password='' host=h", None, "password=*** host=h"),
    ("  host=h   password=s3cret  ", "s3cret", "  host=h   password=***  "),
]
LIBPQ_URI = [
    ("postgresql://ann:s3cret@db/x", "s3cret", "postgresql://ann:***@db/x"),
    ("postgres://ann:p%40ss%20s3cret@db:5432/x", "s3cret", "postgres://ann:***@db:5432/x"),
    ("postgresql://ann:p@ss@s3cret@db/x", "s3cret", "postgresql://ann:***@db/x"),
    ("postgresql://ann:s3c:ret@db/x", "ret", "postgresql://ann:***@db/x"),
    ("postgresql://ann:pa/s3cret@db/x", "s3cret", "postgresql://ann:***@db/x"),
    ("postgresql://ann:pa?s3cret@db/x", "s3cret", "postgresql://ann:***@db/x"),
    ("postgresql://ann:s3cret@h1:5432,h2:5433/x?sslmode=require", "s3cret",
     "postgresql://ann:***@h1:5432,h2:5433/x?sslmode=require"),
    ("postgresql://ann@db/x?password=s3cret&sslmode=require", "s3cret",
     "postgresql://ann@db/x?password=***&sslmode=require"),
    ("postgresql://db/x?sslmode=require&PassWord=s3cret", "s3cret",
     "postgresql://db/x?sslmode=require&PassWord=***"),
    ("postgresql://db/x?pass%77ord=s3cret", "s3cret", "postgresql://db/x?pass%77ord=***"),
    ("postgresql:///x?host=/run/pg&sslpassword=s3cret", "s3cret",
     "postgresql:///x?host=/run/pg&sslpassword=***"),
    ("POSTGRESQL://ann:s3cret@db/x", "s3cret", "POSTGRESQL://ann:***@db/x"),
    # Other schemes (SQLAlchemy drivers, REST catalogs: the Iceberg sink shows them too).
    ("postgresql+psycopg://ann:s3cret@db/x", "s3cret", "postgresql+psycopg://ann:***@db/x"),
    ("mysql://root:s3cret@db/x", "s3cret", "mysql://root:***@db/x"),
    ("https://ann:s3cret@catalog.example.com/v1", "s3cret",
     "https://ann:***@catalog.example.com/v1"),
]
# A driver's message holding a DSN: the words around it are kept.
MESSAGES = [
    ('connection to postgresql://ann:s3cret@db/x?sslmode=require failed: timeout', "s3cret",
     "connection to postgresql://ann:***@db/x?sslmode=require failed: timeout"),
    ("invalid DSN: host=db password='a s3cret' dbname=x", "s3cret",
     "invalid DSN: host=db password=*** dbname=x"),
    ('FATAL:  password authentication failed for user "ann"', None,
     'FATAL:  password authentication failed for user "ann"'),
]


@pytest.mark.parametrize("text, secret, shown", LIBPQ_KEYWORD_VALUE)
def test_libpq_keyword_value(text, secret, shown):
    assert redact_keyword_value(text) == shown
    assert redact_dsn(text) == shown
    assert secret is None or secret not in shown


@pytest.mark.parametrize("text, secret, shown", LIBPQ_URI)
def test_libpq_uri(text, secret, shown):
    assert redact_uri(text) == shown
    assert redact_dsn(text) == shown
    assert secret not in shown


@pytest.mark.parametrize("text, secret, shown", MESSAGES)
def test_messages_holding_a_dsn(text, secret, shown):
    assert redact_dsn(text) == shown
    assert secret is None or secret not in shown


def test_libpq_reads_these_forms_as_the_table_says():
    """The key/value rows are libpq's own syntax: psycopg parses them to the same password."""
    from psycopg.conninfo import conninfo_to_dict

    assert conninfo_to_dict("host=db password = 'a b s3cret' dbname=x")["password"] == "a b s3cret"
    assert conninfo_to_dict("password='it\\'s s3cret' host=h")["password"] == "it's s3cret"
    assert conninfo_to_dict("password=a\\ s3cret host=h")["password"] == "a s3cret"
    assert conninfo_to_dict("postgres://ann:p%40ss%20s3cret@db:5432/x")["password"] == "p@ss s3cret"
    assert conninfo_to_dict("postgresql://db/x?pass%77ord=s3cret")["password"] == "s3cret"
