"""botocore's failures as one line saying what was being done."""

from __future__ import annotations

import pytest
from botocore.parsers import ResponseParserError

from fleetkit.core.aws import aws_errors
from fleetkit.core.errors import AwsError

HTML_500 = (
    "Unable to parse response (syntax error: line 1, column 0), invalid XML received. Further "
    "retries may succeed:\nb'<!doctype html>\\n<html lang=en>\\n<title>500 Internal Server "
    "Error</title>\\n'"
)


def test_an_unparsable_answer_is_one_line_without_the_body() -> None:
    with pytest.raises(AwsError) as caught, aws_errors("setting termination protection on s"):
        raise ResponseParserError(HTML_500)

    assert str(caught.value) == (
        "setting termination protection on s: unreadable answer from AWS: Unable to parse "
        "response (syntax error: line 1, column 0), invalid XML received."
    )
