#!/bin/sh
# A stand-in for helm that succeeds but prints something that is not a manifest stream.
printf '%s\n' '<html><body><h1>502 Bad Gateway</h1></body></html>' '%%% not yaml %%%'
