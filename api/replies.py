"""What a view returns. (flask.typing's alias holds forward references that flask-openapi3,
which reads every view's type hints, cannot resolve.)"""

from __future__ import annotations

from flask import Response

Reply = Response | tuple[Response | str, int]
