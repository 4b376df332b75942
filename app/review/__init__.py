"""Tool Review: submitted tools analysed for security risks, reviewed by people, and signed."""
