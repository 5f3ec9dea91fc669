"""ecpds_avro: the Avro single-object codec of ecpds events, compiled (Rust, PyO3).

``compile_codec`` turns the expanded current schemas of the events into a ``Codec`` whose
``encode(event)`` gives ``C3 01 + fingerprint + body`` and whose ``decode(data)`` gives the
event back, or ``None`` for a payload it does not know (the caller's own path decides).
The bytes are those of the fastavro path of ``bus.codec``, which keeps the rules.
``murmur2`` is Kafka's key hash, for the publisher's choice of partition.
"""

from ecpds_avro._native import Codec, murmur2
from ecpds_avro.program import EventSchema, Program, Unsupported, compile_codec

__all__ = ["Codec", "EventSchema", "Program", "Unsupported", "compile_codec", "murmur2"]
