"""The shared fixtures give each test run servers of its own."""

import psycopg
import redis


def test_database_fixture_is_a_dedicated_database(database_url):
    with psycopg.connect(database_url) as connection:
        name = connection.execute("SELECT current_database()").fetchone()[0]
    assert name.startswith("reelyard_test_")
    assert name not in {"postgres", "reelyard", "test", "root"}


def test_redis_fixture_uses_a_database_other_than_the_default(redis_url):
    assert redis_url.rsplit("/", 1)[1] != "0"


def test_redis_fixture_starts_each_test_with_an_empty_database(redis_url, request):
    leftover = redis.Redis.from_url(redis_url)
    leftover.set("left-behind-by-an-earlier-test", "1")
    leftover.close()
    client = request.getfixturevalue("redis_client")
    assert client.dbsize() == 0
