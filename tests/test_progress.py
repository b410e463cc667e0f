"""Progress lines of torch ranks reach the driver over TCP (ml.progress.RankProgress / progress_sender)."""
from __future__ import annotations

import logging
import socket
import time

from bigdl_medimg.ml.progress import RankProgress, progress_sender
from bigdl_medimg.ports import free_port


def _wait_for(pred, seconds=5.0):
    end = time.time() + seconds
    while time.time() < end and not pred():
        time.sleep(0.02)
    return pred()


def test_lines_sent_with_the_token_are_logged_and_others_are_not(caplog):
    caplog.set_level(logging.INFO, logger="bigdl_medimg.progress")
    with RankProgress("127.0.0.1") as server:
        # a stranger on the port, without the token: nothing of it is logged
        with socket.create_connection(server.address) as intruder:
            intruder.sendall(b"not-the-token\ninjected line\n")
        say = progress_sender(server.endpoint)
        say("epoch 1/2 | iteration 3/7 | loss 0.5000")
        say("two\nlines become one")
        assert _wait_for(lambda: server.lines == 2)
        say.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "bigdl_medimg.progress"]
    assert logged == ["epoch 1/2 | iteration 3/7 | loss 0.5000", "two lines become one"]


def test_an_unreachable_driver_costs_the_rank_nothing():
    port = free_port()  # a port nobody listens on
    say = progress_sender({"host": "127.0.0.1", "port": port, "token": "x"}, timeout=1.0)
    say("lost line")  # no exception: progress is a courtesy
    say("and the next one is not even tried")
    say.close()
    silent = progress_sender(None)  # ranks other than 0
    silent("nothing")
    silent.close()
