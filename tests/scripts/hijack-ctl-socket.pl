# A compromised box taking its ctl daemon's socket (the tests docker_wedged and
# hostile_local run it as the box's user): the socket ARGV[0] is moved aside and a
# listener takes its place; each client's hello goes to the real daemon and the daemon's
# hello comes back, then the connection is held open with nothing more said.
use IO::Socket::UNIX; use Socket;
my $p = $ARGV[0];
rename($p, "$p.real") or die "rename: $!";
my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $p, Listen => 16) or die "listen: $!";
my @held;
while (my $c = $l->accept) {
  my ($h, $b, $x, $r) = ("", "", "", "");
  next unless sysread($c, $h, 4) == 4;
  my $n = unpack("N", $h);
  while (length($b) < $n) { sysread($c, $x, $n - length $b) or last; $b .= $x }
  my $d = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => "$p.real") or next;
  syswrite($d, $h . $b);
  sysread($d, $r, 65536);
  syswrite($c, $r);
  push @held, $c, $d;
}
