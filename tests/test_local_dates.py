""""Today" is Vietnam's date whatever the server's time zone.

A server on UTC (most Linux hosts and containers) is still on yesterday until 07:00 in Vietnam. At
any moment one of the two zones below has a different date from Vietnam's (Kiritimati is 7 hours
ahead of Vietnam, Honolulu 17 hours behind), so a screen that used the server's date fails one of them.
"""
from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from models.base import local_today


@pytest.fixture(params=["Pacific/Kiritimati", "Pacific/Honolulu"])
def server_zone(request, monkeypatch):
    """The server process runs in a far-away time zone for the test."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def vietnam_today() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()


def test_local_today_is_vietnams_date(server_zone):
    assert local_today() == vietnam_today()


def test_a_new_meeting_is_proposed_for_today_in_vietnam(client, auth, org, server_zone):
    """The planning form's default date is Vietnam's today (dd/mm/yyyy), not the server's."""
    assert auth.login("bithu1").status_code == 303
    page = client.get(f"/cells/{org.cell.id}/meetings/new").get_data(as_text=True)
    assert f'value="{vietnam_today():%d/%m/%Y}"' in page
