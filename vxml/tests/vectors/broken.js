if (hour < ) { say("x & y"); }
