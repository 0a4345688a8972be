"""Operating a deployment: ``trace`` one contact, ``capture`` a stream, ``redrive`` parked records, ``sweep`` open
interactions, ``smoke``-check a stack."""
