"""The Data Portal: remote sites pull and push data over SFTP/SCP and HTTPS."""
