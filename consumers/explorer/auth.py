"""The optional bearer token of the JSON API (setting explorer_token; empty: the API is open)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# auto_error=False: a missing header is answered here, with the same 401 as a wrong token.
bearer = HTTPBearer(auto_error=False, description="Required when the service runs with explorer_token set.")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    expected: str = request.app.state.token
    if not expected:
        return
    given = credentials.credentials if credentials is not None else ""
    # compare_digest: the time taken does not tell how much of a guess was right.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "this API needs the header 'Authorization: Bearer <token>' with the service's token",
                            headers={"WWW-Authenticate": "Bearer"})
