"""Every default and tuning constant hfbatch uses, in one place."""

from __future__ import annotations

DEFAULT_API_BASE = "https://router.huggingface.co/v1"
DEFAULT_HUB_URL = "https://huggingface.co"
DEFAULT_API_KEY_ENV = "HF_TOKEN"
# Read after the variable the user names, in this order, as huggingface_hub does.
FALLBACK_TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

DEFAULT_MAX_TOKENS = 2048
DEFAULT_MAX_INPUT_LENGTH = 10_000
MESSAGE_OVERHEAD = 16  # characters per message in calculate_length, for role markers and framing

# Images (media.py). Providers cap an image at about 20 MB; a bigger file is a mistake, not a picture.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Never read, whatever folder --allow-local-images names: kernel views of processes, devices and settings.
DENIED_IMAGE_TREES = ("/proc", "/sys", "/dev")

# Per-attempt wall-clock deadline and stream idle timeout, seconds.
DEFAULT_TIMEOUT = 120.0
# Without --timeout, each provider's deadline follows its latency: this many times its p99, within bounds.
ADAPTIVE_TIMEOUT_FACTOR = 10.0
ADAPTIVE_TIMEOUT_MIN = 30.0
ADAPTIVE_TIMEOUT_MAX = 600.0
ADAPTIVE_TIMEOUT_SAMPLES = 20  # replies before the deadline follows the latency (then every this many)
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
HUB_TIMEOUT = 30.0

# Retry policy (see retry.py).
DEFAULT_MAX_RETRIES = 3
# Transient failures one row may meet across all providers before it fails: at a 30% independent
# transient error rate, 0.3 ** 12 = 5.3e-7, below the one-in-a-million target.
DEFAULT_ROW_ATTEMPTS = 12
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
# A server may ask for a longer pause than this, but a batch run will not wait longer per request.
MAX_RETRY_AFTER = 120.0

# Runner.
DEFAULT_CONCURRENCY = 64
# Consecutive retryable failures that bench a provider, and the first cool-down.
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN = 15.0
# A provider benched this many times in a row with no success between is out for the run.
BREAKER_MAX_TRIPS = 4
TIMELINE_INTERVAL = 5.0  # seconds between snapshots in <output>.timeline.jsonl
PROGRESS_LINE_INTERVAL = 10.0  # seconds between plain progress lines when stderr is not a terminal
DEFAULT_GRACE = 30.0  # seconds in-flight requests get to finish after SIGINT/SIGTERM

# Before the first request (preflight.py): is the endpoint there at all? One retry, a short deadline.
PREFLIGHT_TIMEOUT = 10.0
PREFLIGHT_ATTEMPTS = 2
PREFLIGHT_RETRY_DELAY = 0.5
# A run whose first rows, this many or more, all failed the same way and none succeeded stops (exit 2).
FAIL_FAST_ROWS = 20

# --dry-run: tokens are estimated as characters / this; the first prompts it shows.
CHARS_PER_TOKEN = 4
DRY_RUN_SAMPLES = 3

# Tests shrink every delay with this environment variable (a float multiplier).
TIME_SCALE_ENV = "HFBATCH_TIME_SCALE"
DEBUG_ENV = "HFBATCH_DEBUG"
