"""Stand-ins for servers that cannot be installed here, each following its documented wire protocol."""
