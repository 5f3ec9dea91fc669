"""The notifier: MQTT notifications (WMO WIS2) when a transfer completes (ECPDS-REFERENCE
"MQTT notification system and WIS2").

``core`` decides what to publish for a ``TransferSucceeded`` (pure: topic, properties, the WIS2
GeoJSON message, ``now`` passed in); ``adapters`` publishes over MQTT with paho; ``runner`` is
its stage (``bus.stage``) on ``ecpds.transfers``: publishes, records ``NotificationPublished`` /
``NotificationFailed`` and commits.
"""
