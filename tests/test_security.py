"""Bearer tokens, the Authorization header and per-client rate limits, as plain logic with a fake clock.

No sleeps: token-file rotation advances a fake clock and bumps the file's mtime with ``os.utime``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from predictor.errors import RateLimited, Unauthorized
from predictor.serving.security import (
    Authenticator,
    BearerTokens,
    RateLimiter,
    client_identity,
    parse_token_lines,
    parse_token_list,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_tokens(path: Path, text: str, mtime: float) -> None:
    """Write and set an explicit mtime, so a rewrite is seen even on a coarse-mtime filesystem."""
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, "# team A\nalpha-token\n\n   \n  beta-token  \n# old: gamma\n", mtime=1_700_000_000)
    return path


# --- token sources ---


def test_token_file_lines_skip_blanks_and_comments() -> None:
    assert parse_token_lines("# header\nalpha\n\n  beta \r\n#gamma\n") == ["alpha", "beta"]


def test_token_list_splits_on_commas_and_drops_empty_items() -> None:
    assert parse_token_list(" alpha, beta,,  ,gamma ") == ["alpha", "beta", "gamma"]


def test_file_tokens_are_accepted_and_comments_are_not(token_file: Path) -> None:
    tokens = BearerTokens(token_file)
    assert tokens.enabled
    assert tokens.verify("alpha-token") and tokens.verify("beta-token")
    assert not tokens.verify("old: gamma") and not tokens.verify("# team A") and not tokens.verify("")


def test_env_tokens_alone_enable_auth() -> None:
    tokens = BearerTokens(inline="alpha, beta")
    assert tokens.enabled
    assert tokens.verify("alpha") and tokens.verify("beta")
    assert not tokens.verify("alpha, beta")


def test_file_and_env_tokens_are_both_accepted(token_file: Path) -> None:
    tokens = BearerTokens(token_file, inline="from-env")
    assert tokens.verify("alpha-token") and tokens.verify("from-env")


@pytest.mark.parametrize("inline", [None, "", " , "])
def test_no_source_means_auth_is_disabled(inline: str | None) -> None:
    tokens = BearerTokens(None, inline)
    assert not tokens.enabled
    assert not tokens.verify("anything")
    assert Authenticator(tokens).authenticate(None) is None


def test_verify_is_exact_for_tokens_of_other_lengths() -> None:
    tokens = BearerTokens(inline="s3cret-token,x")
    assert tokens.verify("s3cret-token") and tokens.verify("x")
    for wrong in ("s3cret-toke", "s3cret-token!", "s3cret-tokeN", "", "xx", "x " * 1000, "ünïcode"):
        assert not tokens.verify(wrong), wrong


def test_a_missing_token_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read the auth token file .*nope"):
        BearerTokens(tmp_path / "nope")


def test_an_empty_token_file_fails_at_startup_unless_env_tokens_exist(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match="holds no token"):
        BearerTokens(empty)
    assert BearerTokens(empty, inline="from-env").verify("from-env")


# --- rotation without restart ---


def test_rotated_file_is_picked_up_after_the_recheck_interval(token_file: Path, clock: FakeClock) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    write_tokens(token_file, "new-token\n", mtime=1_700_000_100)

    clock.advance(0.5)  # within the interval: no stat, the old set still holds
    assert tokens.verify("alpha-token") and not tokens.verify("new-token")

    clock.advance(0.5)
    assert tokens.verify("new-token")
    assert not tokens.verify("alpha-token")


def test_same_size_rewrite_is_seen_through_mtime(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "tokens"
    write_tokens(path, "aaaa\n", mtime=1_700_000_000)
    tokens = BearerTokens(path, clock=clock)
    write_tokens(path, "bbbb\n", mtime=1_700_000_001)
    clock.advance(1)
    assert tokens.verify("bbbb") and not tokens.verify("aaaa")


def test_missing_file_keeps_the_last_good_tokens_and_warns_once(
    token_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    token_file.unlink()
    with caplog.at_level(logging.WARNING, logger="predictor.serving.security"):
        for _ in range(3):
            clock.advance(1)
            assert tokens.verify("alpha-token")
    assert len(caplog.records) == 1
    assert "keeping the previous tokens" in caplog.text

    write_tokens(token_file, "after-outage\n", mtime=1_700_000_200)
    clock.advance(1)
    assert tokens.verify("after-outage") and not tokens.verify("alpha-token")


def test_a_briefly_empty_file_keeps_the_last_good_tokens(token_file: Path, clock: FakeClock) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    write_tokens(token_file, "", mtime=1_700_000_100)  # a writer that truncated and has not written yet
    clock.advance(1)
    assert tokens.verify("alpha-token")

    write_tokens(token_file, "written\n", mtime=1_700_000_100)  # same mtime, new size
    clock.advance(1)
    assert tokens.verify("written")


def test_tokens_never_reach_the_logs(token_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="predictor.serving.security"):
        write_tokens(token_file, "rotated-secret\n", mtime=1_700_000_100)
        clock.advance(1)
        assert tokens.verify("rotated-secret")
        token_file.unlink()
        clock.advance(1)
        Authenticator(tokens).authenticate("Bearer rotated-secret")
    assert caplog.records, "the reload should be logged"
    assert "rotated-secret" not in caplog.text and "alpha-token" not in caplog.text


# --- the Authorization header ---


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator(BearerTokens(inline="good-token"))


def test_a_good_token_yields_a_short_hashed_identity(authenticator: Authenticator) -> None:
    identity = authenticator.authenticate("Bearer good-token")
    assert identity is not None and identity.startswith("token:") and len(identity) == len("token:") + 8
    assert "good-token" not in identity
    assert authenticator.authenticate("bearer   good-token ") == identity  # scheme is case-insensitive
    assert identity != authenticator.tokens.identity("other-token")


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer    "])
def test_missing_token_says_how_to_send_one(authenticator: Authenticator, header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        authenticator.authenticate(header)
    assert str(caught.value) == "missing bearer token: send Authorization: Bearer <token>"
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "good-token", "Token good-token"])
def test_wrong_scheme_is_refused_without_echoing_it(authenticator: Authenticator, header: str) -> None:
    with pytest.raises(Unauthorized, match="unsupported authorization scheme") as caught:
        authenticator.authenticate(header)
    assert "good-token" not in str(caught.value) and "dXNl" not in str(caught.value)
    assert "WWW-Authenticate" in caught.value.headers


def test_bad_token_is_refused_without_echoing_it(authenticator: Authenticator) -> None:
    with pytest.raises(Unauthorized) as caught:
        authenticator.authenticate("Bearer guessed-token")
    assert str(caught.value) == "invalid bearer token"
    assert "WWW-Authenticate" in caught.value.headers


# --- rate limiting ---


def test_burst_passes_then_the_next_request_is_limited(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("addr:10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("addr:10.0.0.1")
    assert caught.value.status == 429
    assert caught.value.retry_after_s == pytest.approx(0.5)
    assert caught.value.headers["Retry-After"] == "1"  # whole seconds, never 0


def test_bucket_refills_at_the_configured_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=4, burst=2, clock=clock)
    limiter.acquire("c")
    limiter.acquire("c")
    clock.advance(0.25)  # one token back
    limiter.acquire("c")
    with pytest.raises(RateLimited):
        limiter.acquire("c")
    clock.advance(100)  # refill stops at the burst size
    limiter.acquire("c")
    limiter.acquire("c")
    with pytest.raises(RateLimited):
        limiter.acquire("c")


def test_retry_after_is_the_wait_for_the_missing_tokens(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=0.1, burst=1, clock=clock)
    limiter.acquire("c")
    clock.advance(2.5)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("c")
    assert caught.value.retry_after_s == pytest.approx(7.5)
    assert caught.value.headers["Retry-After"] == "8"


def test_limited_message_names_the_limit_and_the_flag(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=100, burst=200, clock=clock)
    limiter.acquire("c", cost=200)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("c")
    assert str(caught.value) == (
        "rate limit of 100 requests/s (burst 200) exceeded for this client; "
        "retry after 0.01 s or raise --rate_limit_rps"
    )


def test_a_refused_request_costs_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    limiter.acquire("c")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.acquire("c")
    clock.advance(1)
    limiter.acquire("c")


def test_cost_above_burst_needs_a_full_bucket_rather_than_failing_forever(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=2, clock=clock)
    limiter.acquire("c", cost=10)
    with pytest.raises(RateLimited) as caught:
        limiter.acquire("c", cost=10)
    assert caught.value.retry_after_s == pytest.approx(2)


def test_clients_have_separate_buckets(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    limiter.acquire("token:aaaa0000")
    with pytest.raises(RateLimited):
        limiter.acquire("token:aaaa0000")
    limiter.acquire("token:bbbb1111")
    limiter.acquire("addr:10.0.0.1")


def test_least_recently_seen_clients_are_evicted_beyond_the_bound(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock, max_clients=3)
    for name in ("a", "b", "c"):
        limiter.acquire(name)
    with pytest.raises(RateLimited):
        limiter.acquire("a")  # "a" is now the most recently seen; "b" the least
    limiter.acquire("d")
    assert limiter.clients == 3
    limiter.acquire("b")  # evicted, so it starts again with a full bucket
    with pytest.raises(RateLimited):
        limiter.acquire("a")  # kept, still empty
    for n in range(1000):
        limiter.acquire(f"addr:10.0.{n // 256}.{n % 256}")
    assert limiter.clients == 3


def test_zero_rate_disables_limiting_and_stores_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=0, burst=0, clock=clock)
    assert not limiter.enabled
    for _ in range(1000):
        limiter.acquire("c")
    assert limiter.clients == 0


def test_an_enabled_limiter_needs_a_burst_of_at_least_one() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(rate_per_s=5, burst=0)


def test_a_clock_stepping_back_does_not_drain_the_bucket(clock: FakeClock) -> None:
    limiter = RateLimiter(rate_per_s=1, burst=2, clock=clock)
    limiter.acquire("c")
    clock.advance(-50)
    limiter.acquire("c")


# --- who the client is ---


def test_an_authenticated_client_is_its_token_identity() -> None:
    assert client_identity("token:1a2b3c4d", "10.0.0.1", "203.0.113.9", trust_forwarded=True) == "token:1a2b3c4d"


def test_an_anonymous_client_is_its_peer_address() -> None:
    assert client_identity(None, "10.0.0.1", None, trust_forwarded=False) == "addr:10.0.0.1"
    assert client_identity(None, None, None, trust_forwarded=False) == "addr:unknown"


def test_forwarded_for_is_ignored_unless_trusted() -> None:
    assert client_identity(None, "10.0.0.1", "203.0.113.9", trust_forwarded=False) == "addr:10.0.0.1"


def test_trusted_forwarded_for_uses_its_first_hop() -> None:
    forwarded = " 203.0.113.9 , 10.1.0.5, 10.0.0.1"
    assert client_identity(None, "10.0.0.1", forwarded, trust_forwarded=True) == "addr:203.0.113.9"
    assert client_identity(None, "10.0.0.1", " , 10.1.0.5", trust_forwarded=True) == "addr:10.0.0.1"
    assert client_identity(None, "10.0.0.1", "", trust_forwarded=True) == "addr:10.0.0.1"


def test_a_token_with_a_lone_surrogate_is_compared_and_named_like_any_other(clock: FakeClock) -> None:
    """Python strings may hold lone surrogates (an environment variable decoded with surrogateescape)."""
    odd = "tok\udc80en"
    tokens = BearerTokens(None, odd, clock=clock)
    assert tokens.verify(odd) and not tokens.verify("token")
    assert tokens.identity(odd).startswith("token:") and len(tokens.identity(odd)) == len("token:") + 8
    assert tokens.identity(odd) != tokens.identity("token")


def test_inline_tokens_need_no_file_checks_however_long_the_server_runs(clock: FakeClock) -> None:
    tokens = BearerTokens(None, "inline-token", clock=clock)
    clock.advance(3600)
    assert tokens.verify("inline-token") and not tokens.verify("other")


def test_an_unchanged_file_is_not_read_again(
    token_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    with caplog.at_level(logging.INFO, logger="predictor.serving.security"):
        clock.advance(5)
        assert tokens.verify("alpha-token")
    assert caplog.messages == []


def test_an_outage_of_the_token_file_is_logged_once_then_its_return_and_the_reload(
    token_file: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = BearerTokens(token_file, clock=clock)
    with caplog.at_level(logging.INFO, logger="predictor.serving.security"):
        write_tokens(token_file, "", mtime=1_700_000_100)
        clock.advance(1)
        assert tokens.verify("alpha-token")
        clock.advance(1)
        assert tokens.verify("alpha-token")  # still empty: no second warning
        write_tokens(token_file, "one\ntwo\n", mtime=1_700_000_200)
        clock.advance(0.5)
        assert not tokens.verify("one")  # checked at most once per second
        clock.advance(0.5)
        assert tokens.verify("one") and tokens.verify("two")
    assert caplog.messages == [
        f"the auth token file {token_file} holds no token; keeping the previous tokens",
        f"the auth token file {token_file} is readable again",
        f"reloaded 2 auth token(s) from {token_file}",
    ]


@pytest.mark.parametrize(
    ("wait_s", "shown"), [(0.0, "0.001"), (0.5, "0.5"), (2.0, "2"), (12.25, "12.25"), (10.0, "10")]
)
def test_the_retry_wait_in_the_message_is_short_and_never_zero(clock: FakeClock, wait_s: float, shown: str) -> None:
    from predictor.serving.security import _seconds

    assert _seconds(wait_s) == shown


def test_a_rate_below_one_per_second_still_needs_a_burst_and_one_client_is_kept_at_least(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="rate limit burst must be at least 1, got 0"):
        RateLimiter(rate_per_s=0.5, burst=0, clock=clock)
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock, max_clients=0)
    limiter.acquire("a")
    limiter.acquire("b")
    assert limiter.clients == 1
