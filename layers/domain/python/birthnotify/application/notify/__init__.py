"""Emails about files: authorities learn records are waiting, trusts get a receipt, operators hear of held
records. Built from the file-processed event (counts and references only), so no email can carry personal
data."""
