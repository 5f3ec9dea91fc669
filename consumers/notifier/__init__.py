"""The notifier: MQTT notifications (WMO WIS2) when a transfer completes or its file expires
(ECPDS-REFERENCE "MQTT notification system and WIS2").

``core`` decides what to publish for a ``TransferSucceeded`` or an expired file (pure: topic,
WIS2 message, link, relation; ``now`` passed in); ``wis2`` is the check every WIS2 message
passes before it leaves (bundled schema, size and inline limits, one link, topic hierarchy);
``adapters`` publishes over MQTT with paho; ``runner`` is its stage (``bus.stage``) on
``ecpds.transfers`` and ``ecpds.datafiles``: publishes, records ``NotificationPublished`` /
``NotificationFailed`` / ``NotificationRefused`` and commits; ``subscribers`` generates
mosquitto's password and ACL files from the configuration (who may read which topic).
"""
