"""The HTTP endpoint: where it listens and how the command endpoints are authorised."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from simulator.config.common import Strict


class Http(Strict):
    host: str = "0.0.0.0"  # noqa: S104 - a service's health endpoint listens on all interfaces by default
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # bearer token for the mutating endpoints (commands); read-only endpoints stay open.  Without
    # one, a token is generated at start (see adapters/http_token.py) unless open_controls is true.
    token_env: str | None = None
    token_file: str | None = None
    generated_token_file: str | None = None  # where a generated token is written (default: see README)
    open_controls: bool = False  # true: commands need no token (trusted networks only)

    @model_validator(mode="after")
    def _one_token_source(self) -> Http:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("give token_env or token_file, not both")
        if self.open_controls and (self.token_env is not None or self.token_file is not None):
            raise ValueError("open_controls: true opens the commands to everyone; it excludes token_env and "
                             "token_file")
        return self
