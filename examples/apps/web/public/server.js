console.log("serving /srv/web on :3000");
