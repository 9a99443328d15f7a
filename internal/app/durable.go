package app

import (
	"github.com/hbrbot/hbrbot/bot"
	"github.com/hbrbot/hbrbot/upgrade"
)

// wireDurableIntake makes the bot store commands and clicks before their
// ack, and lets any replica answer the people concerned.
func wireDurableIntake(b *bot.Bot, svc *upgrade.Service) {
	svc.Durable.SetAnswerer(b)
	b.UseDurableIntake(svc.Durable)
}
