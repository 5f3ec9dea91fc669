"""The mailer: e-mail notifications of transfers (ECPDS-REFERENCE §2.5 "Email").

``core`` decides which event mails whom and writes the text (pure); ``delivery`` sends a mail
over SMTP or writes it as an ``.eml`` file to the outbox; ``runner`` is its
stage (``bus.stage``) on ``ecpds.transfers`` (group ``ecpds-mailer``): delivers, records a mail
refused for good as ``MailFailed``, then commits.
"""
